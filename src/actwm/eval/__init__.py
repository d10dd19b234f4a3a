"""actwm.eval"""

"""actwm.planning"""

"""actwm.models"""

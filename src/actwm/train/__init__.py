"""actwm.train"""

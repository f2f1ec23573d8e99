"""modise.synthesis"""

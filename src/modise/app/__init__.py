"""modise.app"""

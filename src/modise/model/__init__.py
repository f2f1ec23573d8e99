"""modise.model"""

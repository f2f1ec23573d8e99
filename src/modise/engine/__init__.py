"""modise.engine"""

"""dashfrog_sdk"""

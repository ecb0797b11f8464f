"""deploy/backends"""

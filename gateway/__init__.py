"""The ChatService gateway: a TCP chat server that shares rooms with its peers through Redis."""

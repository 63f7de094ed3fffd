"""The client side: HTTP/1.1 connections (with WebSocket tunnels) and HTTP/2 sessions."""

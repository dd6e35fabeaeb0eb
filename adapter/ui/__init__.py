"""The dashboard at /ui/: pages, their static files, the session login and the routes only it needed."""

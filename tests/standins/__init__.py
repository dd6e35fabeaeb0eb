"""Stand-ins for the servers stash-vision talks to (Stash, stash-box), built on their real schemas."""

"""Building face indexes (client side of the server's EmbedFaces)."""

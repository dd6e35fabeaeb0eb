"""Media access: server-side paths confined to library roots, image decoding with limits."""

"""Where performers' faces come from: one module per kind of source (a folder today; the user's
Stash, stash-box endpoints and Stash Sense releases plug in the same way), each giving performers
with their images, and a registry that turns a build's `sources` parameter into sources."""

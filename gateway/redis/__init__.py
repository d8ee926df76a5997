"""The gateway's Redis side: the broker's requests, the publisher's group commit, the
pub/sub link's wire. Nothing here knows a client socket."""

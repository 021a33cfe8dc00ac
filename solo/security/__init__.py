"""Identity and secrets. The gateway resolves every call to a Principal through one Authenticator."""

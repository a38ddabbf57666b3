256 SHA256:AdYTWeGwog5+ktMJWdwVT+6i2+35KQd6WCwfybXg9Ww warden-test-ed25519@example.com (ED25519)

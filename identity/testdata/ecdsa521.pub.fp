521 SHA256:3jJSPz3tAoCKOIIbG7Xete1gJmBEmI/TIzJLgcz2QLU warden-test-ecdsa521@example.com (ECDSA)

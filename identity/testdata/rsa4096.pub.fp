4096 SHA256:cQfZl1zH8bEaPEawIcQQ9N0Wr/QTPSM2nOPpPElArDs warden-test-rsa4096@example.com (RSA)

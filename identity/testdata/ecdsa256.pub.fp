256 SHA256:ZqQM2UCgVEhU2fQRr4J6c6ewcczH+kLuEjZ6k82Bk0w warden-test-ecdsa256@example.com (ECDSA)

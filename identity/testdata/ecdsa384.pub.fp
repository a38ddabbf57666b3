384 SHA256:5eExQsZIme2niUfpuqH+bSxKSkzUbteguWH0BG3hn9M warden-test-ecdsa384@example.com (ECDSA)

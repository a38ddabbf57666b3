2048 SHA256:4axqdXlttbiMg5wq1OOtScilgNiSMgYHAf6RqBUin1s warden-test-rsa2048@example.com (RSA)

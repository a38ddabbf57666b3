3072 SHA256:vI6LWAEia8J2s4fIEcsEclbELkaZqUl0jaanP6MrTeE warden-test-rsa3072@example.com (RSA)

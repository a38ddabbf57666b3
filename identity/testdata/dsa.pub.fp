1024 SHA256:johu0b0TL9GIsVh8nA63TdMAFh/UPLaeQy5sIgNekZY warden-test-dsa@example.com (DSA)

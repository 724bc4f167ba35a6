"""Who may do what: the access policy consulted before any handler touches metadata or storage."""

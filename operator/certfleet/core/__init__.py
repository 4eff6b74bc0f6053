"""Pure certificate logic: parsing, validity, renewal time, policy checks, domain names."""

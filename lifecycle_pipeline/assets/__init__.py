"""One module per lifecycle stage; each asset is a pure function named as a noun."""

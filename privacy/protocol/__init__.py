"""What the merchants' ClientApp and the operator's ServerApp both read: the task table,
the message codec and the fixed error codes. Neither app imports the other."""

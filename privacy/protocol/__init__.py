"""What the merchants' ClientApp and the operator's ServerApp both read: the task table,
the message codec, the fixed error codes, public run parameters and the operator's feature
schema. Neither app imports the other."""

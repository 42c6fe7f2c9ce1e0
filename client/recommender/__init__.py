"""Client halves of the recommender: each is a function of local data, broadcast
parameters and an injected rng, returning raw numpy statistics that the merchant's node
noises and charges (client/node.py)."""

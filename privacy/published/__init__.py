"""What the server publishes and every merchant reads: the segmentation and recommender models
of model.json, how they are read and validated, and how a merchant scores with them. Both
apps import these; neither imports the other."""

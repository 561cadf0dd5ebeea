"""Document store of Voicebot: schema and migrations, loaders, chunking, embeddings, search."""

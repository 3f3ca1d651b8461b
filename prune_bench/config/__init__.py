"""Config: the shipped tree, composition with Hydra, the schema, validation. Importing the
package loads nothing heavy (`prune-bench list` reads the shipped tree through it); compose.py
registers the resolvers the tree uses."""

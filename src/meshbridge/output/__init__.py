"""Output: objects -> YAML bytes -> a directory tree.

``emitter`` serialises plain objects to the exact bytes a render writes and names each file;
``writer`` puts those files in place (the output directory replaced whole, Secrets that hold a
private key kept apart). Below the use cases, above ``compile``: it never decides what objects
exist, only how they are written.
"""

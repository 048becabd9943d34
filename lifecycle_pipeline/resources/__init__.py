"""Resources: the DVC data registry and the immutable artifact store."""

"""Garbage collection: expired uploads now; unreferenced blobs and manifests later."""

"""Blob storage: one driver contract, its drivers, the layout, and the blob and upload stores."""

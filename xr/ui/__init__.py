"""The workspaces of the app, one module each, and the image viewer they share."""

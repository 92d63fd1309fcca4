"""Batch scoring of NYC TLC trips with a ride-duration model kept in MLflow."""

"""Chat channels: each turns platform updates into `Incoming` and renders `Reply` back."""

"""What the gateway reports about itself: refusal reasons (metrics and logs move here later)."""

"""Campaign response: P(click or redeem within N days | profile, campaign), learned online."""

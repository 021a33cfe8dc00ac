"""Example services (also at examples/ in the repository). Deploy one with `solo deploy FILE`."""

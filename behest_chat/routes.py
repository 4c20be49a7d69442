"""Route paths, in one place."""

INDEX = "/"
LOGIN = "/login"
REGISTER = "/register"
CHAT = "/chat"
SETTINGS = "/settings"

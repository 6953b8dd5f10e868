"""Development-only tools: the fake Twilio SMS API server and the benchmark commands.

Not part of the product: the wheel leaves this package out, and the settings install the app only
outside production (DJANGO_DEBUG on, or PAINPLATFORM_DEVTOOLS=1). Nothing under scheduling/ imports it.
"""

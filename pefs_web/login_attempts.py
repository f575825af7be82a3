"""Limits on guessing passwords, at the login form and at the API's token endpoint.

Policy (settings: PEFS_LOGIN_FAILURE_LIMIT, PEFS_LOGIN_COOLOFF_MINUTES, PEFS_TOKEN_RATE):
- django-axes counts failed logins per (username, client address): after 5 failures in a row the
  pair is locked out for 15 minutes and every attempt, even with the right password, answers 429.
  The same account from another address, and other accounts from the same address, still log in;
  a successful login resets the count.
- The token endpoint also takes at most 10 requests a minute from one address (DRF's
  ScopedRateThrottle, scope "login"), whatever the usernames tried: 429 with Retry-After.
Behind a reverse proxy the client address is the proxy's unless AXES_CLIENT_IP_CALLABLE and
DRF's NUM_PROXIES are set.
"""
from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from rest_framework.throttling import ScopedRateThrottle


class LoginAttemptsBackend(AxesStandaloneBackend):
    """Axes' lockout check for logins that come with a request (the login form, the token endpoint).

    A call without a request (test clients, management code) has no address to count by and is
    not a guess from the network, so it passes to the next backend instead of raising.
    """

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


class RateLimitedLogin:
    """For DRF's ObtainAuthToken: the per-address rate, and axes' lockout answered as a 429.

    Axes marks a lockout on the request it is handed, which for a DRF view is DRF's wrapper; its
    middleware, which turns the mark into the 429, reads Django's request underneath.
    """

    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "login"

    def post(self, request, *args, **kwargs):
        try:
            return super().post(request, *args, **kwargs)
        finally:
            if "axes_locked_out" in vars(request):
                request._request.axes_locked_out = request.axes_locked_out

"""Identity providers: the OpenID Connect relying party (discovery, JWKS, code flow, ID tokens).

The only user of ``aiohttp.ClientSession``. May import config, errors, clock; nothing above.
"""

from broker.idp.client import OIDCClient, TokenSet
from broker.idp.id_token import IdToken
from broker.idp.jwks import ASYMMETRIC_ALGS
from broker.idp.metadata import ProviderMetadata
from broker.idp.pkce import new_pkce, random_token

__all__ = [
    "ASYMMETRIC_ALGS",
    "IdToken",
    "OIDCClient",
    "ProviderMetadata",
    "TokenSet",
    "new_pkce",
    "random_token",
]

"""The ACME issuer of the AUTOMATIC generation method: certificates from an RFC 8555 CA
(Let's Encrypt, ZeroSSL with EAB, any CA by directory URL) validated with HTTP-01 or DNS-01.

`issuer` is the only module that talks to the CA (through the acme library's ClientV2);
`http01` answers the CA's validation requests that the fleet's webservers proxy to certfleet;
`ari` asks the CA when it would like a certificate renewed (RFC 9773).
"""

from certfleet.acme_issuer.accounts import (
    AccountId,
    AccountStore,
    InMemoryAccountStore,
    StoredAccount,
)
from certfleet.acme_issuer.ari import RenewalInfo
from certfleet.acme_issuer.binding import ExternalAccountBinding, parse_binding
from certfleet.acme_issuer.directories import KNOWN_DIRECTORIES, resolve_directory_url
from certfleet.acme_issuer.errors import (
    AcmeChallengeFailedError,
    AcmeDeadlineExceededError,
    AcmeError,
    AcmeRateLimitedError,
    AcmeRejectedError,
    AcmeUnavailableError,
    InvalidAcmeServerError,
)
from certfleet.acme_issuer.http01 import ChallengeStore, Http01Server, is_valid_token
from certfleet.acme_issuer.issuer import (
    AcmeIssuer,
    IssuedCertificate,
    OrderJournal,
    PlacedOrder,
)
from certfleet.acme_issuer.keys import DEFAULT_KEY_ALGORITHM, KeyAlgorithm
from certfleet.acme_issuer.transport import RequestHook

__all__ = [
    "DEFAULT_KEY_ALGORITHM",
    "KNOWN_DIRECTORIES",
    "AccountId",
    "AccountStore",
    "AcmeChallengeFailedError",
    "AcmeDeadlineExceededError",
    "AcmeError",
    "AcmeIssuer",
    "AcmeRateLimitedError",
    "AcmeRejectedError",
    "AcmeUnavailableError",
    "ChallengeStore",
    "ExternalAccountBinding",
    "Http01Server",
    "InMemoryAccountStore",
    "InvalidAcmeServerError",
    "IssuedCertificate",
    "KeyAlgorithm",
    "OrderJournal",
    "PlacedOrder",
    "RenewalInfo",
    "RequestHook",
    "StoredAccount",
    "is_valid_token",
    "parse_binding",
    "resolve_directory_url",
]

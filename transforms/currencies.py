"""ISO 4217 alphabetic codes that Braze accepts as a purchase `currency`.

List one (current currencies and funds) as published by the ISO 4217 maintenance agency on 2026-01-01:
178 codes, the same set as Debian `iso-codes` 4.20. Withdrawn codes are not current and are not accepted:
HRK (2023, euro), CUC (2021), SLL (2024, redenominated to SLE), ZWL (2024, replaced by ZWG),
ANG (2025, replaced by XCG), BGN (2026, euro). Added lately: ZWG (2024), XCG (2025), XAD (2025).
"""


def _codes(text: str) -> frozenset[str]:
    return frozenset(text.split())


ISO_4217: frozenset[str] = _codes(
    """
    AED AFN ALL AMD AOA ARS AUD AWG AZN BAM BBD BDT BHD BIF BMD BND BOB BOV BRL BSD BTN BWP BYN BZD
    CAD CDF CHE CHF CHW CLF CLP CNY COP COU CRC CUP CVE CZK DJF DKK DOP DZD EGP ERN ETB EUR FJD FKP
    GBP GEL GHS GIP GMD GNF GTQ GYD HKD HNL HTG HUF IDR ILS INR IQD IRR ISK JMD JOD JPY KES KGS KHR
    KMF KPW KRW KWD KYD KZT LAK LBP LKR LRD LSL LYD MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN
    MXV MYR MZN NAD NGN NIO NOK NPR NZD OMR PAB PEN PGK PHP PKR PLN PYG QAR RON RSD RUB RWF SAR SBD
    SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TND TOP TRY TTD TWD TZS UAH UGX
    USD USN UYI UYU UYW UZS VED VES VND VUV WST XAD XAF XAG XAU XBA XBB XBC XBD XCD XCG XDR XOF XPD
    XPF XPT XSU XTS XUA XXX YER ZAR ZMW ZWG
    """
)

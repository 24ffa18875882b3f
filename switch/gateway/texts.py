"""The gateway's words in French, Arabic and English, and its action codes.

One table per language so the page and the REST answers say the same thing; a missing key in
one language is a ``KeyError`` in the tests, not a blank on a cardholder's screen.

Action codes are BPC's style of numbers (what SATIM's ``actionCode`` carries); the mapping
from the switch's ISO 8583 response codes is ours, listed in the README ("Online gateway").
"""

from __future__ import annotations

LANGUAGES = ("FR", "AR", "EN")
DEFAULT_LANGUAGE = "FR"

#: ISO 8583 field 39 -> actionCode
ACTION_CODES: dict[str, int] = {
    "00": 0,
    "05": 100,
    "12": 902,
    "13": 110,
    "14": 111,
    "30": 904,
    "41": 208,
    "43": 209,
    "51": 116,
    "54": 101,
    "55": 117,
    "57": 119,
    "61": 121,
    "62": 104,
    "65": 123,
    "75": 106,
    "91": 907,
    "94": 913,
    "96": 909,
}
ACTION_NONE = -1  # no payment attempt decided yet
ACTION_EXPIRED = -2007  # the payment session expired
ACTION_CANCELLED = -2008  # the cardholder cancelled on the payment page
ACTION_DECLINED = 100  # any other decline


def action_code(response_code: str) -> int:
    return ACTION_CODES.get(response_code, ACTION_DECLINED)


TEXTS: dict[str, dict[str, str]] = {
    "FR": {
        "dir": "ltr",
        "lang": "fr",
        "title": "Paiement sécurisé",
        "merchant": "Commerçant",
        "order": "Commande n°",
        "amount": "Montant",
        "description": "Description",
        "card_legend": "Votre carte CIB ou Edahabia",
        "pan": "Numéro de carte",
        "expiry": "Date d'expiration (MM/AA)",
        "expiry_placeholder": "MM/AA",
        "cvv2": "Code de sécurité (CVV2, 3 chiffres au dos)",
        "pay": "Payer",
        "cancel": "Annuler et revenir au commerçant",
        "code_legend": "Code de confirmation",
        "code_sent": "Un code à usage unique a été envoyé par SMS au {phone}.",
        "code": "Code reçu par SMS (6 chiffres)",
        "confirm": "Confirmer le paiement",
        "tries_left": "Essais restants : {n}",
        "expires": "Cette page expire à {time} (UTC).",
        "err_pan": "Le numéro de carte n'est pas valide.",
        "err_expiry": "La date d'expiration doit être au format MM/AA.",
        "err_cvv2": "Le code de sécurité doit comporter 3 chiffres.",
        "err_card": (
            "Cette carte ne peut pas payer en ligne. "
            "Vérifiez les données ou utilisez une autre carte."
        ),
        "err_sends": "Trop de codes ont été envoyés pour cette commande.",
        "unavailable": "Le service est momentanément indisponible. Réessayez dans un instant.",
        "err_code_format": "Le code doit comporter 6 chiffres.",
        "err_code": "Code incorrect.",
        "err_csrf": "La page a expiré ou a été ouverte ailleurs. Recommencez.",
        "expired": "La session de paiement a expiré. Aucun montant n'a été débité.",
        "declined": "Votre paiement a été refusé.",
        "approved": "Votre paiement a été accepté.",
        "processed": "Cette commande a déjà été traitée.",
        "back": "Revenir au commerçant",
        "not_found": "Commande introuvable.",
        "secure_note": "Vos données de carte ne sont transmises qu'à la banque émettrice.",
    },
    "AR": {
        "dir": "rtl",
        "lang": "ar",
        "title": "دفع آمن",
        "merchant": "التاجر",
        "order": "رقم الطلب",
        "amount": "المبلغ",
        "description": "الوصف",
        "card_legend": "بطاقتك CIB أو الذهبية",
        "pan": "رقم البطاقة",
        "expiry": "تاريخ انتهاء الصلاحية (شهر/سنة)",
        "expiry_placeholder": "MM/YY",
        "cvv2": "رمز الأمان (CVV2، 3 أرقام على ظهر البطاقة)",
        "pay": "ادفع",
        "cancel": "إلغاء والعودة إلى التاجر",
        "code_legend": "رمز التأكيد",
        "code_sent": "تم إرسال رمز صالح لمرة واحدة عبر رسالة نصية إلى {phone}.",
        "code": "الرمز المستلم عبر الرسالة النصية (6 أرقام)",
        "confirm": "تأكيد الدفع",
        "tries_left": "المحاولات المتبقية: {n}",
        "expires": "تنتهي صلاحية هذه الصفحة على الساعة {time} (UTC).",
        "err_pan": "رقم البطاقة غير صالح.",
        "err_expiry": "يجب أن يكون تاريخ انتهاء الصلاحية بالشكل MM/YY.",
        "err_cvv2": "يجب أن يتكون رمز الأمان من 3 أرقام.",
        "err_card": (
            "لا يمكن الدفع عبر الإنترنت بهذه البطاقة. تحقق من البيانات أو استعمل بطاقة أخرى."
        ),
        "err_sends": "تم إرسال عدد كبير جدا من الرموز لهذا الطلب.",
        "unavailable": "الخدمة غير متاحة مؤقتا. أعد المحاولة بعد قليل.",
        "err_code_format": "يجب أن يتكون الرمز من 6 أرقام.",
        "err_code": "الرمز غير صحيح.",
        "err_csrf": "انتهت صلاحية الصفحة أو فُتحت في مكان آخر. أعد المحاولة.",
        "expired": "انتهت صلاحية جلسة الدفع. لم يتم خصم أي مبلغ.",
        "declined": "تم رفض عملية الدفع.",
        "approved": "تم قبول عملية الدفع.",
        "processed": "تمت معالجة هذا الطلب مسبقا.",
        "back": "العودة إلى التاجر",
        "not_found": "الطلب غير موجود.",
        "secure_note": "لا تُرسل بيانات بطاقتك إلا إلى البنك المُصدر.",
    },
    "EN": {
        "dir": "ltr",
        "lang": "en",
        "title": "Secure payment",
        "merchant": "Merchant",
        "order": "Order number",
        "amount": "Amount",
        "description": "Description",
        "card_legend": "Your CIB or Edahabia card",
        "pan": "Card number",
        "expiry": "Expiry date (MM/YY)",
        "expiry_placeholder": "MM/YY",
        "cvv2": "Security code (CVV2, 3 digits on the back)",
        "pay": "Pay",
        "cancel": "Cancel and return to the merchant",
        "code_legend": "Confirmation code",
        "code_sent": "A one-time code was sent by SMS to {phone}.",
        "code": "Code received by SMS (6 digits)",
        "confirm": "Confirm the payment",
        "tries_left": "Tries left: {n}",
        "expires": "This page expires at {time} (UTC).",
        "err_pan": "The card number is not valid.",
        "err_expiry": "The expiry date must be MM/YY.",
        "err_cvv2": "The security code must be 3 digits.",
        "err_card": "This card cannot pay online. Check the details or use another card.",
        "err_sends": "Too many codes were sent for this order.",
        "unavailable": "The service is unavailable for a moment. Try again shortly.",
        "err_code_format": "The code must be 6 digits.",
        "err_code": "Incorrect code.",
        "err_csrf": "The page expired or was opened elsewhere. Start again.",
        "expired": "The payment session expired. Nothing was charged.",
        "declined": "Your payment was declined.",
        "approved": "Your payment was accepted.",
        "processed": "This order was already processed.",
        "back": "Return to the merchant",
        "not_found": "Order not found.",
        "secure_note": "Your card details go only to the issuing bank.",
    },
}

NARROW_NBSP = "\u202f"  # French groups thousands with a narrow no-break space
CURRENCY_NAMES = {"FR": "DZD", "EN": "DZD", "AR": "د.ج"}


def format_amount(minor: int, language: str) -> str:
    """Centimes as the cardholder reads them: ``2 500,00 DZD`` / ``2,500.00 DZD``."""
    whole, cents = divmod(minor, 100)
    grouped = f"{whole:,}"
    if language == "FR":
        return f"{grouped.replace(',', NARROW_NBSP)},{cents:02d} DZD"
    return f"{grouped}.{cents:02d} {CURRENCY_NAMES[language]}"


def result_text(language: str, response_code: str) -> str:
    """``actionCodeDescription``: accepted or declined, in the order's language."""
    t = TEXTS[language]
    return t["approved"] if response_code == "00" else t["declined"]

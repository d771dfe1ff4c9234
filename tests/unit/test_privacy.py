from dispatch.intake.privacy import mask_contact, mask_payload, mask_text


def test_mobile_numbers_keep_first_three_and_last_four():
    assert mask_text("电话13857712345，谢谢") == "电话138****2345，谢谢"
    assert mask_text("+86 13857712345") == "138****2345"


def test_resident_id_numbers_keep_region_and_last_four():
    assert mask_text("身份证330302199001011234") == "身份证330302********1234"
    assert mask_text("33030219900101123X") == "330302********123X"


def test_landlines_are_masked():
    assert mask_text("座机0577-88881234") == "座机0577-****1234"


def test_plain_numbers_that_are_not_phones_survive():
    assert mask_text("3号楼201室，共2人") == "3号楼201室，共2人"


def test_contact_field_keeps_only_last_four():
    assert mask_contact("13857712345") == "*******2345"


def test_payload_masks_contacts_and_text_and_keeps_ids():
    masked = mask_payload(
        {
            "caller_phone": "13857712345",
            "content": "打13857712345",
            "order_no": "WZ13857712345",  # an id that looks like a phone number stays whole
            "urgent": True,
        },
        text_fields=frozenset({"content"}),
        contact_fields=frozenset({"caller_phone"}),
    )
    assert masked == {
        "caller_phone": "*******2345",
        "content": "打138****2345",
        "order_no": "WZ13857712345",
        "urgent": True,
    }

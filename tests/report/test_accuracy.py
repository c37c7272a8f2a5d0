from attrret.data.track2 import LabelLine
from attrret.report.accuracy import attribute_accuracy
from attrret.schema import load_schema


def line(image: str, kind: str, values: dict[str, str]) -> LabelLine:
    return LabelLine(image, kind, "", "caption.", values, 1)


def test_confusion_counts_label_rows_against_predicted_columns():
    schema = load_schema()
    labels = [
        line("v1.jpg", "vehicle", {"color": "red", "brand": "Geely", "type": "SUV"}),
        line("v2.jpg", "vehicle", {"color": "red", "type": "Sedan"}),  # incomplete label: brand not scored
        line("v3.jpg", "vehicle", {"color": "white"}),
        line("p1.jpg", "pedestrian", {"gender": "female", "hat": "no"}),
        line("unpredicted.jpg", "vehicle", {"color": "black"}),
    ]
    predicted = {
        "v1.jpg": {"router": "vehicle", "vehicle.color": "red", "vehicle.brand": "Geely", "vehicle.type": "Sedan"},
        "v2.jpg": {"router": "vehicle", "vehicle.color": "pink", "vehicle.brand": "BMW", "vehicle.type": "Sedan"},
        "v3.jpg": {"router": "pedestrian", "vehicle.color": "white"},
        "p1.jpg": {"router": "pedestrian", "pedestrian.gender": "male", "pedestrian.hat": "no"},
    }
    acc = {a.task: a for a in attribute_accuracy(labels, predicted, schema)}
    assert list(acc) == ["pedestrian.gender", "pedestrian.hat", "vehicle.color", "vehicle.type", "vehicle.brand", "router"]
    color = acc["vehicle.color"]
    c = color.classes
    assert color.n == 3 and color.correct == 2 and color.accuracy == 2 / 3
    assert color.confusion[c.index("red")][c.index("pink")] == 1
    assert color.confusion[c.index("red")][c.index("red")] == 1
    assert acc["vehicle.brand"].n == 1 and acc["vehicle.brand"].accuracy == 1.0
    assert acc["vehicle.type"].accuracy == 0.5
    assert acc["pedestrian.gender"].confusion == ((0, 1), (0, 0))
    assert acc["router"].n == 4 and acc["router"].correct == 3
    assert acc["router"].to_json()["confusion"] == [[1, 0], [1, 2]]


def test_nothing_predicted_gives_no_tasks():
    assert attribute_accuracy([line("a.jpg", "vehicle", {"color": "red"})], {}, load_schema()) == []

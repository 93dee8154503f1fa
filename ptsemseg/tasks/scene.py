"""Scene classification: one label per image (FuseNet's auxiliary task), cross entropy, accuracy scores."""
from ptsemseg.errors import PtsemsegError
from ptsemseg.metrics import SceneMetrics
from ptsemseg.models.heads import IMAGE
from ptsemseg.tasks import TASKS, Task
from ptsemseg.visualize import class_banner


@TASKS.register("scene")
class SceneTask(Task):
    name = "scene"
    target_key = "scene"
    kind = IMAGE
    default_loss = {"name": "cross_entropy"}
    metric_names = ("accuracy", "mean_class_acc")
    best_metric = "accuracy"

    def __init__(self, dataset):
        super().__init__(dataset)
        self.class_names = getattr(dataset, "scene_names", None)

    @classmethod
    def channels_of(cls, dataset):
        if not getattr(dataset, "n_scene_classes", None):
            raise PtsemsegError(f"task scene needs scene labels; dataset {type(dataset).__name__} gives none")
        return dataset.n_scene_classes

    def metrics(self, device=None, testing=None):
        return SceneMetrics(self.channels, device=device)

    def predict(self, output):
        return output.argmax(1)

    def draw(self, target, prediction, size):
        return class_banner(int(target), int(prediction), size[1], self.class_names, height=size[0])

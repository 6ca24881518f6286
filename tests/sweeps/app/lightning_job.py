"""A Lightning fit whose val/loss is a given value plus a term that falls each epoch, watched by OptunaPruning."""

import pytorch_lightning as pl
import torch

from cmt.sweeps.pruning import OptunaPruning


class Constant(pl.LightningModule):
    """One weight trained on nothing in particular; validation logs `value + 1 / (epoch + 1)`."""

    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - batch[0]).pow(2).mean()

    def validation_step(self, batch, batch_idx):
        self.log("val/loss", self.value + 1.0 / (self.current_epoch + 1))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def fit(value: float, epochs: int) -> None:
    data = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 1)), batch_size=4)
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[OptunaPruning(monitor="val/loss")],
    )
    trainer.fit(Constant(value), data, data)

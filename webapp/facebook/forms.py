from flask_wtf import FlaskForm
from wtforms import HiddenField, RadioField, SubmitField
from wtforms.validators import DataRequired


class FacebookConnectForm(FlaskForm):
    # "1" asks Facebook to confirm the person again (auth_type=reauthorize): renews the 90-day data access.
    renew = HiddenField()
    submit = SubmitField("Continue with Facebook")


class PagePickForm(FlaskForm):
    # The choices are the parked login's Pages with an Instagram account, set by the view.
    page_id = RadioField("The shop's Page", choices=[], validators=[DataRequired(message="Choose one of the Pages.")])
    submit = SubmitField("Connect this Page's Instagram account")
